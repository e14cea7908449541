"""One thin run(params) per DVC stage: read inputs, call down, write outputs, log."""
