"""Running recovery drills (``run``) and the scheduler that runs them on their crons."""
