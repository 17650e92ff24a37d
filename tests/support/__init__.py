"""What the tests (and the benchmarks in bench/) use to drive the product: the app in a child process
(`appserver`), awkward images made in memory (`hard_inputs`), and learners exported under each Python
minor (`minors`)."""
