"""The Feast declarations: entity, sources, views and the FeatureServices (`clv_v1`)."""
