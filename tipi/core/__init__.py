"""tipi's engine: builder -> controller -> executor, and the runner that drives them."""
