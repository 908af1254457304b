"""Figure builders: pure functions from calibviz's plain data to plotly figures, one module per view."""
