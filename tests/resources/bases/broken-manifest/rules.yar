// Harmless test rule: it matches only a marker string no real mail carries.
rule mailward_e2e_broken { strings: $a = "MAILWARD-E2E-BROKEN-MARKER" condition: $a }
