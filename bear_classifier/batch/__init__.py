"""The app's answers for many photos: `classify` (`python -m bear_classifier.batch.classify`, one row per photo,
decoded and predicted as the app does), `results` (the rows as CSV, JSON Lines or Parquet; --resume),
`classify_ray` (the same rows on a Ray cluster) and `classify_common` (what the two engines share)."""
