"""The monitor of each stage: data capture read back, Model Monitor's checks run on it on the stage's
schedule, and what a violation does (notify, retrain); locally, and as CloudFormation for AWS."""
