"""Classic codecs behind the codec contract: JPEG, WebP, AVIF (Pillow) and JPEG 2000 (glymur)."""
