"""Training, export and evaluation of the Unmask classifier. Needs torch; serving never imports it."""
