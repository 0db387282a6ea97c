"""What the benchmarks share: synthetic data (`synthetic`), building a collection with its stores timed
and reading its vectors back (`build`), timing queries (`timing`), report headers with their commit
(`report`). The fake encoder is the tests' own: `hsearch.testing.FakeEncoder`."""
