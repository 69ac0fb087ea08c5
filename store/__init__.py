"""Where gradprompt keeps things on disk: caches of converted model weights, run folders."""
