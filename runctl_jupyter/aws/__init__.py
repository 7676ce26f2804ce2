"""The AWS backend's notebook-side parts: clients, setup, launch, bundle, resources.

Everything here runs in the notebook/CLI process and is the only user of boto3
there; the instance side is `runctl_jupyter.agent.s3` (the agent's S3 sync) and
`runctl_jupyter.agent.service` (the service around the agent).
"""
