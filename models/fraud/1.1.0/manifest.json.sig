{
  "key_id": "db746330f418ea52",
  "signature": "gu/CxL8WVA+Wt4kaiAup4MqnPz/CymvTfyPYI/SNOQzuRYgO0zQVkEoqts3bRe0IWZqSvmOi3DWZns9RoeUwCQ=="
}
