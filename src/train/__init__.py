"""Training on mixer builds: ``mixer train sft|dpo`` with TRL + DeepSpeed (see README.md)."""
