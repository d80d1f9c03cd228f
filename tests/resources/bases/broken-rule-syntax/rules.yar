// Harmless test rules: they match only marker strings no real mail carries.
// The second one has a syntax error on line 6 (a condition that ends in
// `and`): the whole set must be refused, and the refusal must say where.
rule mailward_e2e_syntax_a { strings: $a = "MAILWARD-E2E-SYNTAX-MARKER-A" condition: $a }

rule mailward_e2e_syntax_b { strings: $b = "MAILWARD-E2E-SYNTAX-MARKER-B" condition: $b and }
