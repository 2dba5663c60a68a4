"""What export and serving both know about I2VGen-XL: the part specs (`parts`), the part modules (`modules`,
torch) and the model info written at export and read by the server (`info`). Neither side imports the other."""
