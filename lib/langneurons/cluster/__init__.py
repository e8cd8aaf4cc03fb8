"""Running the pipeline on a Slurm cluster (submitit): jobs, their states, and a cluster on this host for tests."""
