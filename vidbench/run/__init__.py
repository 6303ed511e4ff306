"""Running a suite: scheduling its jobs' tasks (:mod:`.scheduler`), the executors that run them (local, Ray),
launching each in a child process (:mod:`.launch`), the child's entry point (:mod:`.worker`), and the job's
interleaved timing (:mod:`.interleave`). What a suite is lives in :mod:`vidbench.suite`, what one task does
in :mod:`vidbench.job`.
"""
