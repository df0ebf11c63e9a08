"""The training-time compressions: distill, prune, cluster, factorize, QAT, and their configs."""
