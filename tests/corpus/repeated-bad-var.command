run repeated-bad-var.yaml --dry-run --var severity=high
