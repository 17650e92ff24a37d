"""What the tests (and the benchmarks in bench/) use to drive the product: the app in a child process
(`appserver`), a caller speaking Gradio's raw protocol and the requests no client library sends (`rawcaller`),
awkward and hostile images made in memory (`hard_inputs`), many callers at once (`soak`), and learners exported
under each Python minor (`minors`)."""
