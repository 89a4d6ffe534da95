"""Master supervisor, supervisors, process pools, balancing, scheduler and signals."""
