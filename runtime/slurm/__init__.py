"""The Slurm launcher: ``cascadec run SPEC --launcher slurm`` submits the cascade as Slurm jobs.

``submit`` (the submitting side), ``job`` (the entry point of every job: the same decisions as the local
run, then the stage's ``srun`` step), ``slurmcli`` (sbatch/squeue/scontrol/scancel and the run directory's
``slurm.json``), ``paths`` (shared-filesystem checks). See docs/slurm.md.
"""
