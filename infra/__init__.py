"""CDK constructs of Nightshift and the one stack that composes them."""
