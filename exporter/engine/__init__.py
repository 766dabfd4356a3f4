"""Plan a job into study tasks, run them on workers, resume, finalize."""
