"""World models: LoggedDataset -> fitted model -> reward and uncertainty matrices (torch)."""
