"""Uploading files over SFTP: `upload` (asyncssh for the session, OpenSSH's sftp for the bytes)."""

from docker_manager.adapters.sftp.transfer import CIPHERS, SftpTarget, Uploaded, upload

__all__ = ["CIPHERS", "SftpTarget", "Uploaded", "upload"]
