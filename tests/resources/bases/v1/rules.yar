// Harmless test rules: they match only marker strings no real mail carries.
rule mailward_e2e_v1_a { strings: $a = "MAILWARD-E2E-V1-MARKER-A" condition: $a }
rule mailward_e2e_v1_b { strings: $b = "MAILWARD-E2E-V1-MARKER-B" condition: $b }
rule mailward_e2e_v1_c { strings: $c = "MAILWARD-E2E-V1-MARKER-C" condition: $c }
