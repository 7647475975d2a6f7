"""Learning and evaluation for task allocation (issue #6): the task policy (:mod:`.model`,
:mod:`.train`, torch), its ONNX export (:mod:`.export`) and torch-free runner
(:mod:`.onnx_policy`), and the evaluation of policies and baselines (:mod:`.evaluate`).
Importing this package imports nothing heavy; the deploy path needs only
:mod:`.onnx_policy` and :mod:`sim.mrta`."""
