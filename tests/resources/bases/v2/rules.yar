// Harmless test rules: they match only marker strings no real mail carries.
rule mailward_e2e_v2_a { strings: $a = "MAILWARD-E2E-V2-MARKER-A" condition: $a }
rule mailward_e2e_v2_b { strings: $b = "MAILWARD-E2E-V2-MARKER-B" condition: $b }
rule mailward_e2e_v2_c { strings: $c = "MAILWARD-E2E-V2-MARKER-C" condition: $c }
