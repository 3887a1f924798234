"""The networks: op names, genotypes, what they cost, the discrete network."""
