"""What a pruned layer costs on hardware: the FORMS crossbar model (``crossbar``), measured
per-layer latency tables (``cost_table``) and the conv inputs they are priced on
(``layer_inputs``). Import the one you need."""
