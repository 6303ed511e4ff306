"""Running a suite: scheduling its jobs' tasks (:mod:`.scheduler`), launching each in a child process and the
executors that do so (:mod:`.launch`, local; :mod:`.ray_executor`, Ray), the child's entry point
(:mod:`.worker`), and the job's interleaved timing (:mod:`.interleave`). What a suite is lives in
:mod:`vidbench.suite`, what one task does in :mod:`vidbench.job`, the rows and their one writer in
:mod:`vidbench.results`.
"""
