"""Tests of the simulation infrastructure (sim/)."""
