"""The book's experiments: one module per chapter, turning the science (models, rules,
training, kernels) into tidy tables and scorecard records. Chapters call these; nothing
in the science imports them."""
