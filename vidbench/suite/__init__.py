"""What a suite is: its schema (:mod:`.schema`), how a file becomes one (:mod:`.compose`: YAML, ``extends``,
``-o``), its checks against the plugins (:mod:`.checks`) and the jobs and cells it expands to (:mod:`.cells`).
Nothing here imports torch or runs anything."""
