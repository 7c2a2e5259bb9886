"""AINN networks, one module per role; every causal module runs offline and stepwise."""
