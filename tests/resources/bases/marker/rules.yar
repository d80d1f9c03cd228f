// A harmless test rule: it matches only a marker string no real mail carries.
rule Mailward_E2E_Marker { strings: $m = "MAILWARD-E2E-SCAN-MARKER-7Q" condition: $m }
