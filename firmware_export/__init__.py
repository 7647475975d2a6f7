"""ONNX policy -> C99 for the Crazyflie firmware's app layer, and its checks.

``graph.lower`` reads an ONNX policy into a static batch-1 step list, ``codegen.generate``
writes it as C, ``app.export_firmware`` wraps it into a crazyflie-firmware out-of-tree app,
``check`` compiles and runs the C on the host and on an emulated STM32F405, ``bench`` reports
accuracy, flash, RAM and MACs. Imports onnx and numpy only. See README.md in this folder and
docs/firmware.md.
"""
