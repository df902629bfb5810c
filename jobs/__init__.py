"""Jobs on top of every layer: the scheduled retrain and the demo. Nothing imports them."""
