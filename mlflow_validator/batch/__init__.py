"""Several models in one run: a deployment manifest's entries (`manifest`), each validated by a `validate`
process of its own and reported together (`run`), and the GitHub Action's entry point (`action`), which
turns the Action's inputs into one command line for one model or several."""
