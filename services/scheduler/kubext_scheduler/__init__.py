"""kubext scheduler: a skeleton (config, logs, health) of the planned scheduling framework; it schedules nothing yet."""
