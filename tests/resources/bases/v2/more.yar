// Harmless test rules: they match only marker strings no real mail carries.
rule mailward_e2e_v2_d { strings: $d = "MAILWARD-E2E-V2-MARKER-D" condition: $d }
rule mailward_e2e_v2_e { strings: $e = "MAILWARD-E2E-V2-MARKER-E" condition: $e }
