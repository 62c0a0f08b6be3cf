{
  "key_id": "db746330f418ea52",
  "signature": "pH6pIKmD+X9rZR6ZBx97bAwjsUF+NhJWQNY0ANSPORIZgT6Qhy64njOBU7Q6TDmaGRCb9qsqGg/9afCntVi+Ag=="
}
