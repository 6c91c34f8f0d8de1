"""From a trained model to a release: the gate, the champion, the registry, the model card, the bento."""
