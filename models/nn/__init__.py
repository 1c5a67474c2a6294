"""Neural building blocks shared by the models: attention layers, spatio-temporal features,
transition statistics."""
