"""Test double of the slice of neuralset 0.0.2 that tribev2's inference path uses."""
