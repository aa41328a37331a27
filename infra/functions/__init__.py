"""Two glue Lambdas of the deployment: start a scheduled run, and turn a failed run into an e-mail."""
