"""What training.ipynb calls, as importable code (its cells hold the recipes): `search` and `data` (gathering and
checking the photos, and the split a run wrote), `baseline` (pixel similarity), `imagenet` (the pretrained network
read zero-shot, and the guard fitted on the training photos), `train` (the recipes' parts and the error analysis),
`candidates` and `choice` (every candidate measured on the same photos, and the rule that picks one), `evaluate` and
`evaluation` (the numbers), `export` (model.pkl), `quantize` (int8 graphs), `card_writer` (the model card), `examples`
(the page's examples from the student's photos), `promote` (a run's model becomes the shipped one) and `notebook`
(training.ipynb headless). Nothing on the serving side imports it."""
