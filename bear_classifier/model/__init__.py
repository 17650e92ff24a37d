"""The model as the app, the batch command and the notebook's checks run it: a photo in (`images.open_image`, the one
input gate; `decoding`, the same under a CPU and memory budget in a worker process), the network's input out
(`transforms`, `pixels`), and the answer (`predictor.Predictor`: our classes, and the out-of-domain `guard`). The files
behind it: `modelfile` (model.pkl checked before it is unpickled), `served` and `servedfiles` (the ONNX graphs and the
record that serve without fastai), `card` (the facts the model card's front matter holds). It imports nothing from
the web, training, ship or batch wings."""
