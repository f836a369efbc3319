"""An execution gathered from its records and outputs, shown as one HTML page or a model card."""
