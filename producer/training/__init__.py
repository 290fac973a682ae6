"""What ``batch-router train`` (:mod:`producer.commands.train`) works on: the labelled files it
reads (:mod:`~producer.training.labels`) and the held-out metrics it reports
(:mod:`~producer.training.validation`)."""
