"""Where tasks come from: converters of existing task sets, dataset adapters, synthesis."""
