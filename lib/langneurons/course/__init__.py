"""Course assignments built on langneurons: helpers the notebooks call (kit), `make assignments`
(build, with otter-grader's `otter assign`), `make grade` (grade, with `otter run`) and the guard
that grading puts in front of every submission (guard)."""
