"""Training: losses, GradCache, collator, samplers, hard-negative mining and the ContrastiveTrainer."""
