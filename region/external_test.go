package region_test

import "github.com/georeg/georeg/region"

// testRegion is the region regiontest clusters are of by default.
const testRegion = "westus"

var (
	randomBlob = region.RandomBlob
	linkBlob   = region.LinkBlob
)
